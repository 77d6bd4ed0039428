"""Sync benchmark: outbox delivery against raw paho QoS 1 publishes on the same broker, the time to
drain 10,000 queued events to the back office, and a fleet of boxes sending telemetry to one
mosquitto (broker CPU, end-to-end latency, where one broker stops being enough).

Everything runs on 127.0.0.1 with the shipped broker configuration (mutual TLS, ACL, persistence)
and certificates made for the run. See bench/README.md for how to read the tables.

    .venv/bin/python bench/sync.py            # full: 10,000 messages, 2,000 boxes
    .venv/bin/python bench/sync.py --quick    # smoke: 1,000 messages, 40 boxes (~15 s)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import queue
import selectors
import ssl
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import paho.mqtt.client as mqtt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from appliance.delivery import deliver_published
from appliance.store import outbox
from appliance.store.database import open_database, transaction
from sandbox.backoffice.broker import MosquittoBroker
from sandbox.backoffice.pki import Issued, Pki
from sync.backoffice.service import BackOffice, BackOfficeSettings
from sync.mqtt import BackOfficeLink, MqttSettings, tls_context

if TYPE_CHECKING:
    from paho.mqtt.client import SocketLike

PAYLOAD = {"type": "claim.created", "claim": 123456, "batch": 42, "total_cents": 2350, "to_pay_cents": 0}


@dataclass
class Rate:
    name: str
    messages: int
    seconds: float

    @property
    def per_second(self) -> float:
        return self.messages / self.seconds if self.seconds else 0.0


@dataclass
class FleetStep:
    devices: int
    interval_s: float
    compression: float
    sent: int  # published by the boxes during the step's window
    received: int  # of those, arrived at the back-office subscriber (first copy)
    seconds: float  # from the window's start to the last expected arrival (or the grace's end)
    broker_cpu_pct: float  # broker CPU over ``seconds``
    latencies_ms: list[float]  # one per received message
    duration: float = 0.0  # the publishing window
    acked: int = 0  # PUBACKed by the broker with a success code (within the grace)
    lost: int = 0  # PUBACKed but never received by the subscriber: lost by the broker
    refused: int = 0  # PUBACKed with a failure reason code
    disconnects: int = 0  # unexpected disconnections of boxes during the step
    broker_cpu_s: float = 0.0
    max_lag_ms: float = 0.0  # how far behind its schedule the generator published, at worst
    ack_ms: list[float] = field(default_factory=list)  # publish -> PUBACK at the box, per acked message
    generator_cpu_s: float = 0.0  # all the fleet's worker processes
    subscriber_cpu_s: float = 0.0  # the process of the back-office subscriber

    @property
    def rate(self) -> float:
        window = self.duration or self.seconds
        return self.sent / window if window else 0.0

    @property
    def not_acked(self) -> int:
        """Published but never (successfully) PUBACKed: generator or connection trouble, not a broker loss."""
        return self.sent - self.acked

    @property
    def equivalent_fleet(self) -> int:
        """Boxes at one telemetry message per 10 s that this message rate stands for."""
        return int(self.rate * 10)


@dataclass
class FleetReport:
    devices: int
    connect_s: float
    broker_rss_mb: float
    connected: int = 0
    connect_failures: int = 0  # failed attempts, retried
    steps: list[FleetStep] = field(default_factory=list)


@dataclass
class Report:
    rates: list[Rate]
    drain: Rate
    fleet: FleetReport


def _client(pki: Pki, cn: str, **kwargs: Any) -> mqtt.Client:
    issued = pki.client(cn)
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=cn, protocol=mqtt.MQTTv5, **kwargs)
    client.tls_set_context(tls_context(pki.ca.cert, issued.cert, issued.key))
    return client


def _wait(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


# --- 1. outbox delivery next to raw paho


def raw_paho(pki: Pki, port: int, count: int, inflight: int) -> Rate:
    """QoS 1 publishes of the same payload size, waiting for every PUBACK: the ceiling for one client."""
    client = _client(pki, "bench/raw")
    client.max_inflight_messages_set(inflight)
    client.max_queued_messages_set(0)
    client.connect("127.0.0.1", port)
    client.loop_start()
    _wait(client.is_connected, 10)
    body = json.dumps({"key": "event:bench:000000", "seq": 1, "stream": "events", **PAYLOAD}).encode()
    started = time.perf_counter()
    infos = [client.publish("comptoir/bench/raw/events", body, qos=1) for _ in range(count)]
    for info in infos:
        info.wait_for_publish(60)
    elapsed = time.perf_counter() - started
    client.loop_stop()
    client.disconnect()
    return Rate(f"raw paho QoS 1 (inflight {inflight})", count, elapsed)


def _fill(db_path: Path, count: int) -> None:
    db = open_database(db_path)
    with transaction(db) as conn:
        for n in range(count):
            outbox.enqueue(conn, stream="events", key=f"event:bench:{n:06d}", payload={**PAYLOAD, "claim": n})
    db.close()


def start_backoffice(pki: Pki, port: int, directory: Path) -> BackOffice:
    """The reference back office, one for the whole delivery part (as in the field: one back office,
    always subscribed, so the broker never queues for a session nobody resumes)."""
    issued = pki.client("backoffice")
    office = BackOffice(
        BackOfficeSettings(
            "127.0.0.1", port, pki.ca.cert, issued.cert, issued.key, directory / "bo.db", Ed25519PrivateKey.generate()
        )
    )
    office.start()
    office.wait_connected(10)
    return office


def outbox_rate(pki: Pki, port: int, directory: Path, count: int, window: int, device: str) -> Rate:
    """Queued outbox events through BackOfficeLink + deliver_published, marked delivered when the
    reference back office acknowledged them end to end (one commit per window on each side)."""
    db_path = directory / f"outbox-{window}.db"
    _fill(db_path, count)
    pharmacy, name = device.split("/")
    issued = pki.client(device)
    link = BackOfficeLink(
        MqttSettings("127.0.0.1", port, pharmacy, name, pki.ca.cert, issued.cert, issued.key, max_inflight=200),
        on_command=lambda raw: None,
    )
    link.start()
    link.wait_connected(10)
    db = open_database(db_path)
    started = time.perf_counter()
    delivered = 0
    while delivered < count:
        delivered += deliver_published(db, link, clock=time.time, window=window).delivered
    elapsed = time.perf_counter() - started
    db.close()
    link.stop()
    return Rate(f"outbox -> MQTT (window {window})", count, elapsed)


def drain_to_backoffice(pki: Pki, broker: MosquittoBroker, office: BackOffice, directory: Path, count: int) -> Rate:
    """10,000 events queued while offline, drained to the reference back office (stored, deduplicated)."""
    db_path = directory / "drain.db"
    _fill(db_path, count)
    issued_box = pki.client("bench/drain")
    link = BackOfficeLink(
        MqttSettings("127.0.0.1", broker.port, "bench", "drain", pki.ca.cert, issued_box.cert, issued_box.key),
        on_command=lambda raw: None,
    )
    db = open_database(db_path)
    started = time.perf_counter()
    link.start()  # the network returns
    link.wait_connected(10)
    delivered = 0
    while delivered < count:
        delivered += deliver_published(db, link, clock=time.time, window=500).delivered
    _wait(lambda: len(office.store.event_keys("bench/drain")) >= count, 120)
    elapsed = time.perf_counter() - started
    stored = len(office.store.event_keys("bench/drain"))
    db.close()
    link.stop()
    return Rate(f"drain {count} queued events to the back office (stored {stored})", count, elapsed)


# --- 3. fleet

GRACE_S = 10.0  # after a step's window, PUBACKs (at the boxes) and arrivals (at the subscriber) are waited
# for as long as they keep coming; a message is given up GRACE_S after the last progress (MAX_WAIT_S at most)
MAX_WAIT_S = 300.0
CONNECT_WINDOW = 16  # boxes of one worker between their TLS handshake and their CONNACK, at most
CONNECT_ATTEMPTS = 8
CONNACK_TIMEOUT_S = 30.0


@dataclass(eq=False)
class _Box:
    """One simulated box of a worker: its client, its place in the schedule, its pending PUBACKs."""

    name: str
    client: mqtt.Client
    offset: float  # fraction of the interval at which this box sends, spread over the whole fleet
    connected: bool = False
    online_acked: bool = False  # its retained "online" state was PUBACKed: the box is up
    attempts: int = 0  # failed connection attempts in a row
    gave_up: bool = False
    pending: dict[int, tuple[int, float]] = field(default_factory=dict)  # paho mid -> (message id, sent at)


@dataclass
class _StepCounters:
    sent: list[int] = field(default_factory=list)
    acked: list[int] = field(default_factory=list)
    refused: int = 0  # PUBACK with a failure reason code
    disconnects: int = 0
    max_lag_s: float = 0.0
    ack_ms: list[float] = field(default_factory=list)  # publish -> PUBACK, per acked message


class _FleetLoop:
    """All the boxes of one worker process driven from one thread: one ``selectors`` loop over paho's
    external-loop API (``loop_read``/``loop_write``/``loop_misc`` and the socket callbacks), so the
    generator has no thread per box to starve (GIL, TLS) and no lock between them.

    paho's ``reconnect`` does the TCP connection and the TLS handshake blocking (up to
    ``connect_timeout``): the loop paces them itself, one handshake at a time, at most
    ``CONNECT_WINDOW`` boxes waiting for their CONNACK, failures retried with a backoff.
    """

    def __init__(
        self, pki_dir: Path, port: int, names: Sequence[str], offsets: Sequence[float], first_id: int, id_stride: int
    ) -> None:
        self.selector = selectors.DefaultSelector()
        self.next_id, self.id_stride = first_id, id_stride
        self.counters = _StepCounters()
        self.connect_failures = 0
        self.closing = False
        self.due: dict[_Box, float] = {}  # boxes to (re)connect -> not before (monotonic)
        self.waiting: dict[_Box, float] = {}  # boxes waiting for their CONNACK -> since (monotonic)
        self._last_misc = time.monotonic()
        ca = pki_dir / "ca.crt"
        self.boxes: list[_Box] = []
        for name, offset in zip(names, offsets, strict=True):
            stem = "client-" + name.replace("/", "_")
            issued = Issued(pki_dir / f"{stem}.crt", pki_dir / f"{stem}.key")
            client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=name, protocol=mqtt.MQTTv5)
            client.tls_set_context(tls_context(ca, issued.cert, issued.key))
            client.will_set(f"comptoir/{name}/state", b"offline", qos=1, retain=True)
            client.connect_timeout = 20.0
            client.connect_async("127.0.0.1", port, keepalive=600)  # stores the parameters only
            box = _Box(name, client, offset)
            client.user_data_set(box)
            client.on_socket_open = self._on_socket_open
            client.on_socket_close = self._on_socket_close
            client.on_socket_register_write = self._on_register_write
            client.on_socket_unregister_write = self._on_unregister_write
            client.on_connect = self._on_connect
            client.on_disconnect = self._on_disconnect
            client.on_publish = self._on_publish
            self.boxes.append(box)

    # paho callbacks (all on this one thread)

    def _on_socket_open(self, client: mqtt.Client, box: _Box, sock: SocketLike) -> None:
        self.selector.register(sock, selectors.EVENT_READ, box)

    def _on_socket_close(self, client: mqtt.Client, box: _Box, sock: SocketLike) -> None:
        with contextlib.suppress(KeyError, ValueError):
            self.selector.unregister(sock)

    def _on_register_write(self, client: mqtt.Client, box: _Box, sock: SocketLike) -> None:
        with contextlib.suppress(KeyError, ValueError):
            self.selector.modify(sock, selectors.EVENT_READ | selectors.EVENT_WRITE, box)

    def _on_unregister_write(self, client: mqtt.Client, box: _Box, sock: SocketLike) -> None:
        with contextlib.suppress(KeyError, ValueError):
            self.selector.modify(sock, selectors.EVENT_READ, box)

    def _on_connect(
        self, client: mqtt.Client, box: _Box, flags: mqtt.ConnectFlags, reason: ReasonCode, props: Properties | None
    ) -> None:
        self.waiting.pop(box, None)
        if reason.is_failure:
            self._failed(box)
            return
        self.due.pop(box, None)
        box.connected = True
        box.attempts = 0
        if not box.online_acked:
            info = client.publish(f"comptoir/{box.name}/state", b"online", qos=1, retain=True)
            box.pending[info.mid] = (-1, time.perf_counter())

    def _on_disconnect(
        self,
        client: mqtt.Client,
        box: _Box,
        flags: mqtt.DisconnectFlags,
        reason: ReasonCode,
        props: Properties | None,
    ) -> None:
        was_connected, box.connected = box.connected, False
        self.waiting.pop(box, None)
        if self.closing:
            return
        if was_connected:
            self.counters.disconnects += 1
            self.due[box] = time.monotonic() + 0.2
        else:
            self._failed(box)

    def _on_publish(
        self, client: mqtt.Client, box: _Box, mid: int, reason: ReasonCode, props: Properties | None
    ) -> None:
        entry = box.pending.pop(mid, None)
        if entry is None:
            return
        message_id, sent_at = entry
        if message_id == -1:
            box.online_acked = True
        elif reason.is_failure:
            self.counters.refused += 1
        else:
            self.counters.acked.append(message_id)
            self.counters.ack_ms.append((time.perf_counter() - sent_at) * 1000)

    # connections

    def _failed(self, box: _Box) -> None:
        """A connection attempt failed (refused, handshake timeout, no CONNACK): retry later, or give up."""
        if box in self.due or box.gave_up:
            return  # already counted (paho reports a refused CONNACK twice: on_connect, on_disconnect)
        self.connect_failures += 1
        box.attempts += 1
        if box.attempts >= CONNECT_ATTEMPTS:
            box.gave_up = True
        else:
            self.due[box] = time.monotonic() + min(5.0, 0.1 * 2**box.attempts)

    def _service_connections(self) -> bool:
        """Start at most one connection (its handshake blocks the loop) if the CONNACK window has room;
        give up on CONNACKs that take too long. True when a connection could start now."""
        now = time.monotonic()
        for late, since in list(self.waiting.items()):
            if now - since > CONNACK_TIMEOUT_S:
                del self.waiting[late]
                self._failed(late)  # the retry's reconnect() closes the old socket
        if len(self.waiting) >= CONNECT_WINDOW:
            return False
        box = next((b for b, at in self.due.items() if at <= now), None)
        if box is None:
            return False
        del self.due[box]
        self.waiting[box] = now
        try:
            box.client.reconnect()
        except OSError:  # refused, TLS handshake failed or timed out
            self.waiting.pop(box, None)
            self._failed(box)
        return True

    def connect_all(self, timeout: float) -> None:
        now = time.monotonic()
        self.due = dict.fromkeys(self.boxes, now)
        deadline = now + timeout
        busy = True
        while time.monotonic() < deadline and not all(b.online_acked or b.gave_up for b in self.boxes):
            self.pump(0.0 if busy else 0.02, service=False)
            busy = self._service_connections()

    # the loop

    def pump(self, timeout: float, *, service: bool = True) -> None:
        """One turn of the loop: wait at most ``timeout`` for socket events and handle them."""
        for key, mask in self.selector.select(timeout):
            box: _Box = key.data
            client = box.client
            if client.socket() is not key.fileobj:
                continue  # closed (and maybe reopened) by an earlier event of this turn
            if mask & selectors.EVENT_READ:
                client.loop_read()
                # TLS: records already decrypted and buffered inside the SSL object are invisible to
                # the selector, so read them now
                for _ in range(100):
                    sock = client.socket()
                    if not isinstance(sock, ssl.SSLSocket) or not sock.pending():
                        break
                    client.loop_read()
            if mask & selectors.EVENT_WRITE and client.socket() is not None:
                client.loop_write()
        now = time.monotonic()
        if now - self._last_misc >= 1.0:
            self._last_misc = now
            for box in self.boxes:
                if box.client.socket() is not None:
                    box.client.loop_misc()
        if service and (self.due or self.waiting):
            self._service_connections()

    def run_step(self, interval: float, duration: float, start_at: float) -> dict[str, Any]:
        """Telemetry from every box every ``interval`` s for ``duration`` s from ``start_at`` (wall clock),
        then for the PUBACKs (see ``GRACE_S``); the step's counters for the parent."""
        self.counters = _StepCounters()
        cpu0 = time.process_time()
        order = sorted(self.boxes, key=lambda b: b.offset)
        end = start_at + duration
        k, j, burst = 0, 0, 0
        while order:
            due = start_at + (k + order[j].offset) * interval
            if due >= end:
                break
            now = time.time()
            if now < due:
                self.pump(min(due - now, 0.5))
                continue
            box = order[j]
            self.counters.max_lag_s = max(self.counters.max_lag_s, now - due)
            message_id, self.next_id = self.next_id, self.next_id + self.id_stride
            body = {"at": time.time(), "id": message_id, "outbox": {"depth": 0}, "versions": {"comptoir": "bench"}}
            info = box.client.publish(f"comptoir/{box.name}/telemetry", json.dumps(body).encode(), qos=1)
            box.pending[info.mid] = (message_id, time.perf_counter())
            self.counters.sent.append(message_id)
            j += 1
            if j == len(order):
                j, k = 0, k + 1
            burst += 1
            if burst % 32 == 0:  # behind schedule: still write and read between publishes
                self.pump(0.0)
        c = self.counters
        deadline, progress, answered = time.monotonic() + MAX_WAIT_S, time.monotonic(), 0
        while time.monotonic() < min(deadline, progress + GRACE_S) and len(c.acked) + c.refused < len(c.sent):
            self.pump(0.05)
            if len(c.acked) + c.refused > answered:
                progress, answered = time.monotonic(), len(c.acked) + c.refused
        return {
            "sent": c.sent,
            "acked": c.acked,
            "refused": c.refused,
            "disconnects": c.disconnects,
            "max_lag_s": c.max_lag_s,
            "ack_ms": c.ack_ms,
            "cpu_s": time.process_time() - cpu0,
        }

    def close(self) -> None:
        self.closing = True
        for box in self.boxes:
            if box.client.socket() is not None:
                box.client.disconnect()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and any(b.client.socket() is not None for b in self.boxes):
            self.pump(0.05, service=False)
        self.selector.close()


def _fleet_worker(
    pki_dir: str,
    port: int,
    names: Sequence[str],
    offsets: Sequence[float],
    index: int,
    workers: int,
    plan: Any,
    results: Any,
) -> None:
    """A share of the fleet in one process, all its boxes on one thread (see :class:`_FleetLoop`).
    Reports ``("ready", index, connected, failures)`` then one ``("step", index, counters)`` per plan
    entry ``(interval, duration, start_at)``; ``None`` ends it."""
    loop = _FleetLoop(Path(pki_dir), port, names, offsets, index, workers)
    loop.connect_all(timeout=600)
    results.put(("ready", index, sum(b.online_acked for b in loop.boxes), loop.connect_failures))
    while True:
        try:
            step = plan.get_nowait()
        except queue.Empty:
            loop.pump(0.1)
            continue
        if step is None:
            break
        interval, duration, start_at = step
        results.put(("step", index, loop.run_step(interval, duration, start_at)))
    loop.close()


def _wait_arrivals(arrivals: dict[int, float], lock: threading.Lock, expected: set[int]) -> None:
    """Until every message of ``expected`` reached the subscriber, or nothing arrived for ``GRACE_S``
    (a subscriber still draining a backlog is late, not losing), ``MAX_WAIT_S`` at most."""
    missing = set(expected)
    deadline, progress, count = time.monotonic() + MAX_WAIT_S, time.monotonic(), -1
    while missing and time.monotonic() < min(deadline, progress + GRACE_S):
        with lock:
            missing.difference_update([m for m in missing if m in arrivals])
            if len(arrivals) > count:
                progress, count = time.monotonic(), len(arrivals)
        time.sleep(0.05)


def fleet(
    pki: Pki, broker: MosquittoBroker, devices: int, workers: int, steps: Sequence[tuple[float, float]]
) -> FleetReport:
    """``devices`` boxes over ``workers`` processes; each step is (interval between a box's messages, seconds)."""
    names = [f"ph{n // 4:04d}/c{n % 4}" for n in range(devices)]
    for name in names:
        pki.client(name)
    offsets = [n / devices for n in range(devices)]
    context = multiprocessing.get_context("fork")
    plans = [context.Queue() for _ in range(workers)]
    results = context.Queue()
    started = time.perf_counter()
    # forked before the subscriber's thread exists
    processes = [
        context.Process(
            target=_fleet_worker,
            args=(
                str(pki.directory),
                broker.port,
                names[i::workers],
                offsets[i::workers],
                i,
                workers,
                plans[i],
                results,
            ),
            daemon=True,
        )
        for i in range(workers)
    ]
    for process in processes:
        process.start()

    arrivals: dict[int, float] = {}  # message id -> latency in ms (first arrival)
    lock = threading.Lock()

    def on_message(client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        now = time.time()
        try:
            body = json.loads(message.payload)
            at, message_id = float(body["at"]), int(body["id"])
        except (ValueError, KeyError, TypeError):
            return
        with lock:
            arrivals.setdefault(message_id, (now - at) * 1000)

    subscriber = _client(pki, "backoffice")
    subscriber.on_message = on_message
    subscriber.connect("127.0.0.1", broker.port)
    subscriber.loop_start()
    _wait(subscriber.is_connected, 10)
    subscriber.subscribe("comptoir/+/+/telemetry", qos=1)
    connected, failures = 0, 0
    for _ in processes:
        try:
            _kind, _index, ok, failed = results.get(timeout=900)
        except queue.Empty:
            break
        connected += ok
        failures += failed
    report = FleetReport(devices, time.perf_counter() - started, broker.rss_bytes() / 1e6, connected, failures)
    for interval, duration in steps:
        start_at = time.time() + 1.0
        for plan in plans:
            plan.put((interval, duration, start_at))
        time.sleep(max(0.0, start_at - time.time()))
        cpu0, t0, own0 = broker.cpu_seconds(), time.perf_counter(), time.process_time()
        sent: list[int] = []
        acked: set[int] = set()
        ack_ms: list[float] = []
        refused = disconnects = 0
        lag = generator_cpu = 0.0
        for _ in processes:
            try:
                _kind, _index, counters = results.get(timeout=duration + MAX_WAIT_S + 120)
            except queue.Empty:
                break
            sent += counters["sent"]
            acked.update(counters["acked"])
            refused += counters["refused"]
            disconnects += counters["disconnects"]
            lag = max(lag, counters["max_lag_s"])
            ack_ms += counters["ack_ms"]
            generator_cpu += counters["cpu_s"]
        _wait_arrivals(arrivals, lock, acked)
        elapsed = time.perf_counter() - t0
        cpu = broker.cpu_seconds() - cpu0
        subscriber_cpu = time.process_time() - own0
        with lock:
            latencies = [arrivals[m] for m in sent if m in arrivals]
            lost = sum(1 for m in acked if m not in arrivals)
        report.steps.append(
            FleetStep(
                devices,
                interval,
                10.0 / interval,
                len(sent),
                len(latencies),
                elapsed,
                100 * cpu / elapsed,
                latencies,
                duration=duration,
                acked=len(acked),
                lost=lost,
                refused=refused,
                disconnects=disconnects,
                broker_cpu_s=cpu,
                max_lag_ms=lag * 1000,
                ack_ms=ack_ms,
                generator_cpu_s=generator_cpu,
                subscriber_cpu_s=subscriber_cpu,
            )
        )
    for plan in plans:
        plan.put(None)
    for process in processes:
        process.join(30)
        if process.is_alive():
            process.kill()
    subscriber.loop_stop()
    subscriber.disconnect()
    return report


# --- running and printing


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smoke run (small counts)")
    parser.add_argument("--messages", type=int, help="messages for the rate rows (default 10,000; quick 1,000)")
    parser.add_argument("--devices", type=int, help="boxes in the fleet simulation (default 2,000; quick 40)")
    parser.add_argument("--workers", type=int, default=4, help="processes playing the fleet (default 4)")
    parser.add_argument("--step-seconds", type=float, help="length of each fleet step (default 20; quick 3)")
    parser.add_argument("--dir", type=Path, help="where the temporary files go")
    parser.add_argument(
        "--autosave-changes",
        type=int,
        default=10_000,
        help="the fleet broker saves its persistence file every N changes (shipped: 1000; default here 10000;"
        " 1 is quadratic in the fleet size, see bench/README.md)",
    )
    parser.add_argument(
        "--intervals",
        type=float,
        nargs="+",
        help="seconds between two telemetry messages of a box, one fleet step each"
        " (default 10 2 0.5; quick 2 0.5: time-compressed ×5 and ×20)",
    )
    args = parser.parse_args(argv)
    args.messages = args.messages or (1_000 if args.quick else 10_000)
    args.devices = args.devices or (40 if args.quick else 2_000)
    args.step_seconds = args.step_seconds or (3.0 if args.quick else 20.0)
    return args


def run_benchmark(args: argparse.Namespace) -> Report:
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        directory = Path(tmp)
        pki = Pki(directory / "pki")
        broker = MosquittoBroker(directory / "broker", pki)
        broker.start()
        office = start_backoffice(pki, broker.port, directory)
        try:
            rates = [
                raw_paho(pki, broker.port, args.messages, 200),
                outbox_rate(pki, broker.port, directory, args.messages, 200, "bench/w200"),
                raw_paho(pki, broker.port, args.messages, 20),
                outbox_rate(pki, broker.port, directory, args.messages, 500, "bench/w500"),
            ]
            drain = drain_to_backoffice(pki, broker, office, directory, args.messages)
        finally:
            office.stop()
            broker.kill()
        fleet_broker = MosquittoBroker(directory / "fleet-broker", pki, autosave_changes=args.autosave_changes)
        fleet_broker.start()
        try:
            intervals = args.intervals or ([10.0, 2.0, 0.5] if not args.quick else [2.0, 0.5])
            fleet_report = fleet(
                pki,
                fleet_broker,
                args.devices,
                min(args.workers, args.devices),
                [(interval, max(args.step_seconds, interval * 1.5)) for interval in intervals],
            )
        finally:
            fleet_broker.kill()
    return Report(rates, drain, fleet_report)


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def print_report(report: Report, args: argparse.Namespace, out: Callable[[str], None] = print) -> None:
    out(f"sync benchmark ({'quick' if args.quick else 'full'}): mosquitto 2.0, mutual TLS, QoS 1, 127.0.0.1")
    out("")
    out(f"{'delivery':<46} {'messages':>9} {'seconds':>8} {'msg/s':>8} {'× raw':>6}")
    raw = report.rates[0].per_second
    for rate in report.rates:
        out(
            f"{rate.name:<46} {rate.messages:>9} {rate.seconds:>8.2f} {rate.per_second:>8.0f}"
            f" {rate.per_second / raw:>6.2f}"
        )
    d = report.drain
    out(f"{d.name:<46} {d.messages:>9} {d.seconds:>8.2f} {d.per_second:>8.0f}")
    out("")
    f = report.fleet
    out(
        f"fleet: {f.connected}/{f.devices} boxes connected (TLS, one selector loop per worker) in {f.connect_s:.1f} s"
        f" ({f.connect_failures} failed attempts retried); broker RSS {f.broker_rss_mb:.0f} MB;"
        f" persistence saved every {args.autosave_changes} changes"
    )
    out(
        f"{'telemetry every':<16} {'×time':>6} {'msg/s':>8} {'≈ boxes @10s':>12} {'sent':>7} {'lost':>5}"
        f" {'no ack':>6} {'disc.':>5} {'broker CPU':>10} {'p50 ms':>7} {'p99 ms':>7} {'max ms':>7}"
    )
    for s in f.steps:
        out(
            f"{s.interval_s:>14.1f} s {s.compression:>6.0f} {s.rate:>8.0f} {s.equivalent_fleet:>12} {s.sent:>7}"
            f" {s.lost:>5} {s.not_acked:>6} {s.disconnects:>5} {s.broker_cpu_pct:>9.0f}%"
            f" {_pct(s.latencies_ms, 0.5):>7.1f} {_pct(s.latencies_ms, 0.99):>7.1f}"
            f" {max(s.latencies_ms, default=float('nan')):>7.1f}"
        )
    out(
        "lost = PUBACKed by the broker, never received by the subscriber (a broker loss); no ack = published,"
        " never PUBACKed with success (generator or connection trouble); disc. = boxes disconnected during the"
        f" step; both given up {GRACE_S:.0f} s after the last PUBACK or arrival"
    )
    out("")
    out("where the time goes (CPU in % of one core over the step; PUBACK = publish -> PUBACK at the box)")
    out(
        f"{'telemetry every':<16} {'PUBACK p50':>10} {'p99 ms':>7} {'gen. lag ms':>11} {'generator CPU':>13}"
        f" {'subscriber CPU':>14} {'broker CPU':>10}"
    )
    for s in f.steps:
        out(
            f"{s.interval_s:>14.1f} s {_pct(s.ack_ms, 0.5):>10.1f} {_pct(s.ack_ms, 0.99):>7.1f} {s.max_lag_ms:>11.0f}"
            f" {100 * s.generator_cpu_s / s.seconds:>12.0f}% {100 * s.subscriber_cpu_s / s.seconds:>13.0f}%"
            f" {s.broker_cpu_pct:>9.0f}%"
        )
    best = max(f.steps, key=lambda s: s.rate)
    out("")
    if best.broker_cpu_s > 0:
        ceiling = best.sent / best.broker_cpu_s
        out(
            f"one mosquitto (single-threaded: one core) at {best.broker_cpu_pct:.0f}% CPU for {best.rate:.0f} msg/s"
            f" -> about {ceiling:.0f} msg/s at 100%, i.e. about {int(ceiling * 10):,} boxes at one message per 10 s"
            " (telemetry only; events, states and commands come on top)."
        )
    else:
        out(
            f"broker CPU below the clock-tick resolution at {best.rate:.0f} msg/s: no ceiling estimate for"
            " boxes at one message per 10 s from this run (run more boxes)."
        )
    out(f"median latency of the busiest step: {statistics.median(best.latencies_ms or [0]):.1f} ms")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    print_report(run_benchmark(args), args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
