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
import json
import multiprocessing
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import paho.mqtt.client as mqtt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from paho.mqtt.enums import CallbackAPIVersion

from appliance.delivery import deliver_published
from appliance.store import outbox
from appliance.store.database import open_database, transaction
from sandbox.backoffice.broker import MosquittoBroker
from sandbox.backoffice.pki import Issued, Pki
from sandbox.backoffice.service import BackOffice, BackOfficeSettings
from sync.mqtt import BackOfficeLink, MqttSettings, tls_context

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
    sent: int
    received: int
    seconds: float
    broker_cpu_pct: float
    latencies_ms: list[float]

    @property
    def rate(self) -> float:
        return self.sent / self.seconds if self.seconds else 0.0

    @property
    def equivalent_fleet(self) -> int:
        """Boxes at one telemetry message per 10 s that this message rate stands for."""
        return int(self.rate * 10)


@dataclass
class FleetReport:
    devices: int
    connect_s: float
    broker_rss_mb: float
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


def _fleet_worker(
    pki_dir: str,
    port: int,
    names: Sequence[str],
    ready: Any,
    go: Any,
    plan: Any,
    counts: Any,
    index: int,
) -> None:
    """A share of the fleet in one process: one paho client (and thread) per box, telemetry on a schedule."""
    ca = Path(pki_dir) / "ca.crt"
    clients = []
    for name in names:
        stem = "client-" + name.replace("/", "_")
        issued = Issued(Path(pki_dir) / f"{stem}.crt", Path(pki_dir) / f"{stem}.key")
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=name, protocol=mqtt.MQTTv5)
        client.tls_set_context(tls_context(ca, issued.cert, issued.key))
        client.will_set(f"comptoir/{name}/state", b"offline", qos=1, retain=True)
        # one handshake at a time: hundreds of threads handshaking at once starve each other of the
        # GIL past paho's connect timeout, and the generator, not the broker, becomes the bottleneck
        for _attempt in range(5):
            try:
                client.connect("127.0.0.1", port, keepalive=600)
                break
            except OSError:
                time.sleep(0.2)
        client.loop_start()
        clients.append(client)
    _wait(lambda: all(c.is_connected() for c in clients), 120)
    for name, client in zip(names, clients, strict=True):
        client.publish(f"comptoir/{name}/state", b"online", qos=1, retain=True)
    ready.release()
    while True:
        step = plan.get()
        if step is None:
            break
        interval, duration = step
        go.wait()
        start = time.time()
        sent = 0
        n = len(clients)
        # spread the boxes over the interval: box i sends at start + k * interval + i/n * interval
        k = 0
        while time.time() - start < duration:
            for i, (name, client) in enumerate(zip(names, clients, strict=True)):
                pause = start + k * interval + (i / n) * interval - time.time()
                if pause > 0:
                    time.sleep(pause)
                if time.time() - start >= duration:
                    break
                body = json.dumps({"at": time.time(), "outbox": {"depth": 0}, "versions": {"comptoir": "bench"}})
                client.publish(f"comptoir/{name}/telemetry", body.encode(), qos=1)
                sent += 1
            k += 1
        counts[index] = sent
        ready.release()
    for client in clients:
        client.disconnect()
        client.loop_stop()


def fleet(
    pki: Pki, broker: MosquittoBroker, devices: int, workers: int, steps: Sequence[tuple[float, float]]
) -> FleetReport:
    """``devices`` boxes over ``workers`` processes; each step is (interval between a box's messages, seconds)."""
    names = [f"ph{n // 4:04d}/c{n % 4}" for n in range(devices)]
    for name in names:
        pki.client(name)
    latencies: list[float] = []
    received = [0]
    lock = threading.Lock()

    def on_message(client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        now = time.time()
        try:
            at = float(json.loads(message.payload)["at"])
        except (ValueError, KeyError):
            return
        with lock:
            latencies.append((now - at) * 1000)
            received[0] += 1

    subscriber = _client(pki, "backoffice")
    subscriber.on_message = on_message
    subscriber.connect("127.0.0.1", broker.port)
    subscriber.loop_start()
    _wait(subscriber.is_connected, 10)
    subscriber.subscribe("comptoir/+/+/telemetry", qos=1)
    time.sleep(0.3)
    context = multiprocessing.get_context("fork")
    ready = context.Semaphore(0)
    go = context.Event()
    counts = context.Array("i", workers)
    plans = [context.Queue() for _ in range(workers)]
    shares = [names[i::workers] for i in range(workers)]
    started = time.perf_counter()
    processes = [
        context.Process(
            target=_fleet_worker,
            args=(str(pki.directory), broker.port, shares[i], ready, go, plans[i], counts, i),
            daemon=True,
        )
        for i in range(workers)
    ]
    for process in processes:
        process.start()
    for _ in processes:
        ready.acquire(timeout=300)
    report = FleetReport(devices, time.perf_counter() - started, broker.rss_bytes() / 1e6)
    for interval, duration in steps:
        go.clear()
        for plan in plans:
            plan.put((interval, duration))
        with lock:
            latencies.clear()
            received[0] = 0
        cpu0, t0 = broker.cpu_seconds(), time.perf_counter()
        go.set()
        for _ in processes:
            ready.acquire(timeout=duration + 120)
        _wait(lambda: received[0] >= sum(int(c) for c in counts[:]), 10)
        elapsed = time.perf_counter() - t0
        cpu = broker.cpu_seconds() - cpu0
        with lock:
            step = FleetStep(
                devices,
                interval,
                10.0 / interval,
                sum(int(c) for c in counts[:]),
                received[0],
                elapsed,
                100 * cpu / elapsed,
                list(latencies),
            )
        report.steps.append(step)
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
        help="the fleet broker saves its persistence file every N changes (shipped: 1; default here 10000,"
        " because 1 is quadratic in the fleet size, see bench/README.md)",
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
        f"fleet: {f.devices} boxes connected (TLS) in {f.connect_s:.1f} s; broker RSS {f.broker_rss_mb:.0f} MB;"
        f" persistence saved every {args.autosave_changes} changes"
    )
    out(
        f"{'telemetry every':<16} {'×time':>6} {'msg/s':>8} {'≈ boxes @10s':>12} {'sent':>7} {'lost':>5}"
        f" {'broker CPU':>10} {'p50 ms':>7} {'p99 ms':>7} {'max ms':>7}"
    )
    for s in f.steps:
        out(
            f"{s.interval_s:>14.1f} s {s.compression:>6.0f} {s.rate:>8.0f} {s.equivalent_fleet:>12} {s.sent:>7}"
            f" {s.sent - s.received:>5} {s.broker_cpu_pct:>9.0f}% {_pct(s.latencies_ms, 0.5):>7.1f}"
            f" {_pct(s.latencies_ms, 0.99):>7.1f} {max(s.latencies_ms, default=float('nan')):>7.1f}"
        )
    best = max(f.steps, key=lambda s: s.rate)
    out("")
    if best.broker_cpu_pct > 0:
        ceiling = best.rate * 100 / best.broker_cpu_pct
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
