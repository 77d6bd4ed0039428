"""Back-office benchmark: how many messages per second the back office ingests through one mosquitto
before losing any or its latency blowing up, on SQLite and on PostgreSQL, and how the load spreads
over 1, 2 and 3 workers against one PostgreSQL (MQTT 5 shared subscriptions).

Everything on 127.0.0.1: the shipped broker configuration (mutual TLS, ACL, persistence), a
PostgreSQL cluster with its default durability (``fsync``, ``synchronous_commit``) and TLS verified,
the workers as the shipped command (``python -m sync.backoffice --config``). Simulated boxes (one
paho client and certificate each, in this process) publish keyed events with ``seq``/``prev`` as a
box does, QoS 1, and time each one until the back office's end-to-end acknowledgement on
``events/ack`` (sent after the commit). See bench/README.md for how to read the tables.

    .venv/bin/python bench/backoffice.py            # full
    .venv/bin/python bench/backoffice.py --quick    # smoke (~15 s)
"""

from __future__ import annotations

import argparse
import json
import os
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
from paho.mqtt.enums import CallbackAPIVersion

from sandbox.backoffice.broker import MosquittoBroker
from sandbox.backoffice.pki import Pki
from sandbox.backoffice.postgres import PostgresCluster
from sandbox.backoffice.workers import WorkerProcess, postgres_table, write_signing_key
from sync.backoffice.store import BackOfficeStore
from sync.mqtt import tls_context

TARGET_MSG_S = 1000.0
"""What the back office must take: 10,000 boxes at one event every 10 s at their busiest."""
LATENCY_LIMIT_MS = 1000.0
"""p99 of publish -> end-to-end acknowledgement beyond which the latency has blown up."""
KEEP_UP = 0.9
GRACE_S = 5.0  # after a step, acknowledgements are waited for while they keep coming, given up GRACE_S after the last
MAX_WAIT_S = 120.0
PAYLOAD = {"type": "claim.created", "claim": 123456, "batch": 42, "total_cents": 2350, "to_pay_cents": 0}


def _cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Box:
    """A simulated box: publishes keyed events with ``seq``/``prev``, records the acknowledgements."""

    def __init__(self, pki: Pki, port: int, name: str) -> None:
        self.name = name
        issued = pki.client(name)
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=name, protocol=mqtt.MQTTv5)
        self.client.tls_set_context(tls_context(pki.ca.cert, issued.cert, issued.key))
        self.client.max_inflight_messages_set(1000)
        self.client.max_queued_messages_set(0)
        self.client.on_message = self._on_message
        self.lock = threading.Lock()
        self.sent: dict[str, float] = {}
        self.acked: dict[str, float] = {}
        self.held = 0
        self.seq = 0
        self.run = ""
        self._subscribed = threading.Event()
        self.client.on_subscribe = lambda *a: self._subscribed.set()
        self.client.connect("127.0.0.1", port, keepalive=60)
        self.client.loop_start()
        self.client.subscribe(f"comptoir/{name}/events/ack", qos=1)
        if not self._subscribed.wait(10):
            raise RuntimeError(f"box {name} could not subscribe")

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        now = time.monotonic()
        try:
            body = json.loads(message.payload)
        except ValueError:
            return
        with self.lock:
            for key in body.get("keys") or []:
                self.acked.setdefault(key, now)
            self.held += len(body.get("held") or [])

    def new_run(self, run: str) -> None:
        """A fresh stream (a new database): keys of this run, the first without ``prev``."""
        with self.lock:
            self.run, self.seq = run, 0

    def publish(self) -> None:
        with self.lock:
            self.seq += 1
            seq, key = self.seq, f"event:{self.name}:{self.run}:{self.seq}"
            self.sent[key] = time.monotonic()
        body: dict[str, Any] = {"key": key, "seq": seq, "stream": "events", **PAYLOAD}
        if seq > 1:
            body["prev"] = seq - 1
        self.client.publish(f"comptoir/{self.name}/events", json.dumps(body, separators=(",", ":")), qos=1)

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@dataclass
class Step:
    """One stretch of traffic against the back office."""

    label: str
    offered: float  # msg/s asked of the generator (0: as fast as it can)
    sent: int = 0
    acked: int = 0
    held: int = 0
    window_s: float = 0.0  # publishing
    seconds: float = 0.0  # first publish -> last acknowledgement
    latencies_ms: list[float] = field(default_factory=list)
    max_lag_ms: float = 0.0  # how far behind its schedule the generator published, at worst
    worker_cpu_s: float = 0.0
    broker_cpu_s: float = 0.0
    applied: int = -1  # rows in the database after the step (-1: not checked)
    duplicates: int = 0
    out_of_order: int = 0

    @property
    def lost(self) -> int:
        return self.sent - self.acked

    @property
    def rate(self) -> float:
        """Acknowledged messages per second, first publish to last acknowledgement."""
        return self.acked / self.seconds if self.seconds else 0.0

    @property
    def p50(self) -> float:
        return _percentile(self.latencies_ms, 0.50)

    @property
    def p99(self) -> float:
        return _percentile(self.latencies_ms, 0.99)

    @property
    def keeps_up(self) -> bool:
        """Acknowledged at 90 % of the offered rate at least (else a backlog grows, whatever the p99)."""
        return self.offered <= 0 or self.rate >= KEEP_UP * self.offered

    @property
    def healthy(self) -> bool:
        return self.lost == 0 and self.p99 <= LATENCY_LIMIT_MS and self.keeps_up


def traffic(
    boxes: list[Box], rate: float, seconds: float, count: int, label: str, pids: Sequence[int], broker: MosquittoBroker
) -> Step:
    """Publish ``count`` messages round robin over the boxes at ``rate`` msg/s (0: flat out), then wait
    for their acknowledgements while they keep coming."""
    step = Step(label, rate)
    for box in boxes:
        with box.lock:
            box.sent.clear()
            box.acked.clear()
            box.held = 0
    cpu0 = sum(_cpu_seconds(p) for p in pids)
    broker0 = broker.cpu_seconds()
    total = count if rate <= 0 else int(rate * seconds)
    started = time.monotonic()
    for n in range(total):
        if rate > 0:
            due = started + n / rate
            lag = time.monotonic() - due
            if lag < 0:
                time.sleep(-lag)
            else:
                step.max_lag_ms = max(step.max_lag_ms, lag * 1000)
        boxes[n % len(boxes)].publish()
    step.window_s = time.monotonic() - started
    step.sent = total
    last_progress, last_count = time.monotonic(), -1
    while time.monotonic() - started < MAX_WAIT_S:
        acked = sum(len(b.acked) for b in boxes)
        if acked >= total:
            break
        if acked != last_count:
            last_progress, last_count = time.monotonic(), acked
        elif time.monotonic() - last_progress > GRACE_S:
            break
        time.sleep(0.02)
    last_ack = started
    for box in boxes:
        with box.lock:
            for key, at in box.acked.items():
                if key in box.sent:
                    step.acked += 1
                    step.latencies_ms.append((at - box.sent[key]) * 1000)
                    last_ack = max(last_ack, at)
            step.held += box.held
    step.seconds = last_ack - started
    step.worker_cpu_s = sum(_cpu_seconds(p) for p in pids) - cpu0
    step.broker_cpu_s = broker.cpu_seconds() - broker0
    return step


def check_applied(step: Step, target: Path | str, boxes: list[Box]) -> None:
    """Count what the database holds: every message applied once, in order per box."""
    store = BackOfficeStore(target)
    try:
        fleet = {d["device"]: d for d in store.fleet()}
        step.applied = sum(int(fleet.get(b.name, {}).get("events", 0)) for b in boxes)
        step.duplicates = sum(int(fleet.get(b.name, {}).get("duplicates", 0)) for b in boxes)
        step.out_of_order = sum(int(fleet.get(b.name, {}).get("out_of_order", 0)) for b in boxes)
    finally:
        store.close()


def raw_broker(pki: Pki, port: int, count: int) -> Step:
    """The peer: one client's QoS 1 publishes PUBACKed by the same broker, no back office behind."""
    issued = pki.client("bench/raw")
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench/raw", protocol=mqtt.MQTTv5)
    client.tls_set_context(tls_context(pki.ca.cert, issued.cert, issued.key))
    client.max_inflight_messages_set(200)
    client.max_queued_messages_set(0)
    client.connect("127.0.0.1", port)
    client.loop_start()
    body = json.dumps({"key": "event:raw:1", "seq": 1, "stream": "events", **PAYLOAD})
    started = time.monotonic()
    infos = [client.publish("comptoir/bench/raw/telemetry", body, qos=1) for _ in range(count)]
    for info in infos:
        info.wait_for_publish(60)
    elapsed = time.monotonic() - started
    client.disconnect()
    client.loop_stop()
    step = Step("raw paho QoS 1, broker PUBACK only (peer)", 0, sent=count, acked=count, seconds=elapsed)
    return step


@dataclass
class Report:
    raw: Step
    ceiling: dict[str, list[Step]]  # engine -> steps, until one was not healthy
    scaling: list[tuple[int, Step]]  # workers -> burst


def run_benchmark(args: argparse.Namespace) -> Report:
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        directory = Path(tmp)
        pki = Pki(directory / "pki")
        broker = MosquittoBroker(directory / "broker", pki)
        broker.start()
        postgres = PostgresCluster(pki=pki, fsync=True).start()
        key = write_signing_key(directory / "commands.key")
        boxes = [Box(pki, broker.port, f"bench{n:03d}/c1") for n in range(args.boxes)]
        workers: list[WorkerProcess] = []

        def start_workers(count: int, database: dict[str, Any], tag: str) -> list[WorkerProcess]:
            made = [
                WorkerProcess.make(
                    directory / "workers",
                    f"{tag}-w{n}",
                    pki=pki,
                    broker_port=broker.port,
                    signing_key=key,
                    database=database,
                    group="bench",
                )
                for n in range(1, count + 1)
            ]
            workers.extend(made)
            for w in made:
                w.start()
            for w in made:
                w.wait_ready(30)
            return made

        def stop_workers(made: list[WorkerProcess]) -> None:
            for w in made:
                w.stop()

        try:
            raw = raw_broker(pki, broker.port, args.messages)
            ceiling: dict[str, list[Step]] = {}
            for engine in args.engines:
                target: Path | str
                if engine == "sqlite":
                    target = directory / "ceiling.db"
                    database: dict[str, Any] = {"engine": "sqlite", "path": str(target)}
                else:
                    target = postgres.create_database("ceiling")
                    database = postgres_table(target)
                made = start_workers(1, database, f"ceiling-{engine}")
                for box in boxes:
                    box.new_run(f"ceiling-{engine}")
                steps: list[Step] = []
                for rate in args.rates:
                    step = traffic(boxes, rate, args.step_seconds, 0, f"{rate:g} msg/s", [w.pid for w in made], broker)
                    steps.append(step)
                    if not step.healthy:
                        break
                stop_workers(made)
                check_applied(steps[-1], target, boxes)
                ceiling[engine] = steps
            scaling: list[tuple[int, Step]] = []
            for count in args.workers:
                conninfo = postgres.create_database(f"scaling{count}")
                made = start_workers(count, postgres_table(conninfo), f"scaling{count}")
                for box in boxes:
                    box.new_run(f"scaling{count}")
                step = traffic(boxes, 0, 0, args.messages, f"{count} worker(s)", [w.pid for w in made], broker)
                stop_workers(made)
                check_applied(step, conninfo, boxes)
                scaling.append((count, step))
            return Report(raw, ceiling, scaling)
        finally:
            for w in workers:
                w.kill()
            for box in boxes:
                box.stop()
            postgres.stop()
            broker.kill()


def ceiling_of(steps: list[Step]) -> float:
    """The highest acknowledged rate of a healthy step (0 if none was)."""
    return max((s.rate for s in steps if s.healthy), default=0.0)


def print_report(report: Report, args: argparse.Namespace, out: Callable[[str], None] = print) -> None:
    mode = "quick" if args.quick else "full"
    out(
        f"back-office benchmark ({mode}): mosquitto 2.0 + PostgreSQL {_pg_version()} (fsync on) on 127.0.0.1, mutual"
        f" TLS, QoS 1, {args.boxes} boxes, end-to-end acknowledgement after the commit; {os.cpu_count()} CPUs,"
        f" load average {os.getloadavg()[0]:.1f}"
    )
    out("")
    out(
        f"target: {TARGET_MSG_S:.0f} msg/s (10,000 boxes at one event per 10 s);"
        f" latency limit p99 {LATENCY_LIMIT_MS:.0f} ms"
    )
    out(f"peer:   {report.raw.label}: {report.raw.rate:.0f} msg/s ({report.raw.sent} messages)")
    out("")
    out("1. single broker, one worker: offered rate until a loss, p99 > limit or < 90 % of it acknowledged")
    header = (
        f"{'engine':<11} {'offered':>10} {'sent':>7} {'acked':>7} {'lost':>5} {'held':>5} {'msg/s':>7}"
        f" {'p50 ms':>8} {'p99 ms':>8} {'gen.lag':>8} {'worker CPU':>10} {'broker CPU':>10}"
    )
    out(header)
    for engine, steps in report.ceiling.items():
        for s in steps:
            span = max(s.seconds, s.window_s) or 1.0
            out(
                f"{engine:<11} {s.label:>10} {s.sent:>7} {s.acked:>7} {s.lost:>5} {s.held:>5} {s.rate:>7.0f}"
                f" {s.p50:>8.1f} {s.p99:>8.1f} {s.max_lag_ms:>8.0f} {s.worker_cpu_s / span:>10.0%}"
                f" {s.broker_cpu_s / span:>10.0%}"
            )
    for engine, steps in report.ceiling.items():
        top = ceiling_of(steps)
        last = steps[-1]
        why = "every step healthy: the ceiling is above" if last.healthy else f"at {last.label}: {_why(last)}"
        applied = f"; {last.applied} applied, {last.out_of_order} out of order" if last.applied >= 0 else ""
        out(f"ceiling {engine}: {top:.0f} msg/s = {top / TARGET_MSG_S:.2f} × target ({why}){applied}")
    out("")
    out("2. workers sharing the load ($share/bench/...), one PostgreSQL, a burst published flat out")
    out(
        f"{'workers':>7} {'messages':>8} {'seconds':>8} {'msg/s':>7} {'× 1':>5} {'p50 ms':>8} {'p99 ms':>8}"
        f" {'held':>5} {'applied':>8} {'dup.':>5} {'order':>5} {'worker CPU':>10}"
    )
    base = report.scaling[0][1].rate if report.scaling else 0.0
    for count, s in report.scaling:
        out(
            f"{count:>7} {s.sent:>8} {s.seconds:>8.2f} {s.rate:>7.0f} {s.rate / base if base else 0:>5.2f}"
            f" {s.p50:>8.1f} {s.p99:>8.1f} {s.held:>5} {s.applied:>8} {s.duplicates:>5}"
            f" {'ok' if s.out_of_order == 0 else s.out_of_order:>5} {s.worker_cpu_s / (s.seconds or 1):>10.0%}"
        )
    out("(worker CPU: all the workers' processes, in % of one core over the step; the machine's cores are shared with")
    out(" the broker, PostgreSQL and this generator)")


def _why(step: Step) -> str:
    parts = []
    if step.lost:
        parts.append(f"{step.lost} not acknowledged")
    if step.p99 > LATENCY_LIMIT_MS:
        parts.append(f"p99 {step.p99:.0f} ms")
    if not step.keeps_up:
        parts.append(f"{step.rate:.0f} msg/s acknowledged: falls behind")
    return ", ".join(parts) or "healthy"


def _pg_version() -> str:
    from sandbox.backoffice.postgres import bindir

    try:
        return bindir().parent.name
    except RuntimeError:
        return "?"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smoke run (small counts, short steps)")
    parser.add_argument("--boxes", type=int, help="simulated boxes (default 50; quick 10)")
    parser.add_argument("--rates", type=float, nargs="+", help="offered msg/s of the ceiling steps")
    parser.add_argument("--step-seconds", type=float, help="length of a ceiling step (default 4; quick 1)")
    parser.add_argument("--messages", type=int, help="messages of the scaling bursts (default 6,000; quick 600)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 3], help="worker counts to compare")
    parser.add_argument(
        "--engines", nargs="+", choices=["sqlite", "postgresql"], default=["sqlite", "postgresql"], help="ceiling runs"
    )
    parser.add_argument("--dir", type=Path, help="where the temporary files go")
    args = parser.parse_args(argv)
    quick = args.quick
    args.boxes = args.boxes or (10 if quick else 50)
    args.rates = args.rates or ([200.0, 800.0] if quick else [250.0, 500.0, 1000.0, 2000.0, 3000.0, 4000.0])
    args.step_seconds = args.step_seconds or (1.0 if quick else 4.0)
    args.messages = args.messages or (600 if quick else 6000)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    print_report(run_benchmark(args), args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
