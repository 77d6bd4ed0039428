"""The back office worker: MQTT 5 subscriber, command sender, fleet page and JSON API.

It connects to the broker with its own certificate (common name ``backoffice``: the ACL lets it read
``comptoir/#`` and write the boxes' ``cmd`` and ``events/ack`` topics) and stores what the boxes send
in its database (:mod:`sync.backoffice.store`, SQLite or PostgreSQL).

**One worker** (no ``group``): plain subscriptions on a persistent session (``clean_start`` false, a
week's expiry), so that what the boxes publish while it is down is queued by the broker and arrives
when it is back.

**Several workers** (``group = "backoffice"``, the same PostgreSQL): MQTT 5 shared subscriptions,
``$share/<group>/comptoir/+/+/events`` and so on, so the broker gives each message to one worker of
the group. Their sessions are clean (no expiry): the broker keeps queuing a shared subscription's
share for a member whose session outlives its connection (mosquitto does), which would leave a killed
worker's share of the traffic stuck until it returns. What a worker had received but not committed
when it died is lost at the broker, and nothing of it for good: the box sends again what the back
office did not acknowledge, and another worker applies it once.

After a batch is committed, the keys of the boxes' outbox messages it applied (new or repeated) go
back to each box on ``comptoir/<pharmacy>/<device>/events/ack`` (``{"keys": [...]}``, QoS 1): the
box marks a message delivered only then, not on the broker's PUBACK (mosquitto PUBACKs before it
persists). A message left waiting for its predecessor is reported as ``{"held": [...]}`` with the
correlation data of the send it came in, so that the box sends the run again: at once with one
worker; with several, ``hold_grace`` seconds later and only if it is still waiting (the predecessor
is often in another worker's batch, committed a few milliseconds later, and that worker then
acknowledges both).

Messages are acknowledged to the broker *after* they are committed: paho's ``manual_ack`` lets the
writer thread commit a batch of messages in one transaction, then send their PUBACKs.

The web page and API are :mod:`sync.backoffice.web` (127.0.0.1, operator accounts and sessions).
"""

from __future__ import annotations

import json
import logging
import os
import queue
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal

import paho.mqtt.client as mqtt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from sync.backoffice.rollouts import RolloutRunner
from sync.backoffice.store import Applied, BackOfficeStore, Incoming
from sync.backoffice.web import handler
from sync.commands import make_command
from sync.mqtt import correlation_of, tls_context

log = logging.getLogger(__name__)

SUBSCRIPTIONS = (
    "comptoir/+/+/state",
    "comptoir/+/+/events",
    "comptoir/+/+/events/update",
    "comptoir/+/+/telemetry",
    "comptoir/+/+/cmd/ack",
)
BATCH = 500
"""Messages committed in one transaction at most (then acknowledged)."""
RECEIVE_MAXIMUM = 1000
"""QoS 1 messages the broker may have in flight towards the back office (MQTT 5 Receive Maximum)."""
SESSION_EXPIRY_S = 7 * 24 * 3600
"""A single worker's persistent session: the broker queues for it while it is down."""
ROLLOUT_LEASE = "rollouts"


def subscriptions(group: str | None) -> list[str]:
    """The topic filters of a worker: shared by ``group`` (``$share/<group>/…``) or its own."""
    return [f"$share/{group}/{topic}" if group else topic for topic in SUBSCRIPTIONS]


def default_client_id(group: str | None) -> str:
    """``backoffice`` for a single worker (its persistent session is found again by that id); in a
    group, one id per process (``backoffice-<host>-<pid>``: two workers with the same id would take
    the connection from each other)."""
    return f"backoffice-{socket.gethostname()}-{os.getpid()}" if group else "backoffice"


@dataclass(frozen=True, slots=True)
class BackOfficeSettings:
    host: str
    port: int
    ca: Path
    cert: Path
    key: Path
    db: Path | str
    """A SQLite file (a :class:`Path`) or a PostgreSQL connection string (``str``)."""
    signing_key: Ed25519PrivateKey
    http_port: int | None = 0
    """The web page's port on 127.0.0.1 (0: any free one; None: no web server)."""
    client_id: str = "backoffice"
    reports: Path | None = None
    """Where ``comptoir reconcile --out`` writes its report: the page shows the same reconciliation."""
    rollout_interval: float = 60.0
    """Seconds between two steps of the running roll-outs (0: never by itself, tests call ``tick``)."""
    group: str | None = None
    """The shared-subscription group of several workers (None: a single worker, persistent session)."""
    hold_grace: float | None = None
    """Seconds before telling a box a message waits for its predecessor (default: 0 alone, 1 s in a group)."""
    keepalive: int = 30
    http_bind: str = "127.0.0.1"
    secure_cookies: bool = False
    """The page is reached over HTTPS (a TLS reverse proxy): the session cookie gets ``Secure`` (it gets
    it anyway when the proxy says ``X-Forwarded-Proto: https``)."""

    @property
    def grace(self) -> float:
        if self.hold_grace is not None:
            return self.hold_grace
        return 1.0 if self.group else 0.0


class BackOffice:
    """A back-office worker: :meth:`start`, use, :meth:`stop` (bounded waits everywhere)."""

    def __init__(self, settings: BackOfficeSettings) -> None:
        self.settings = settings
        self.store = BackOfficeStore(settings.db)
        self._inbox: queue.Queue[tuple[mqtt.MQTTMessage, int, float] | None] = queue.Queue()
        self._connected = threading.Event()
        self._subscribed = threading.Event()
        self._generation = 0
        self._stop = threading.Event()
        self._writer: threading.Thread | None = None
        self._httpd: ThreadingHTTPServer | None = None
        self.web_store: BackOfficeStore | None = None
        """The web page's own connection for the accounts and sessions: a login or a session check
        never waits behind the writer's batch (which holds the main connection)."""
        self._http_thread: threading.Thread | None = None
        self._rollout_thread: threading.Thread | None = None
        self._deferred: list[tuple[float, str, str, bytes | None]] = []
        """Held-back notices waiting for the grace: (due, device, key, correlation)."""
        self.stats = {"received": 0, "batches": 0, "messages": 0, "failed_batches": 0}
        """Messages received from the broker, batches committed and their messages, batches that failed."""
        self.rollouts = RolloutRunner(self.store, lambda device, kind, args: self.send_command(device, kind, args))
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=settings.client_id,
            protocol=mqtt.MQTTv5,
            manual_ack=True,
        )
        client.tls_set_context(tls_context(settings.ca, settings.cert, settings.key))
        client.reconnect_delay_set(1, 5)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        self._client = client

    # --- lifecycle

    def start(self) -> None:
        """Connect (in the background), start the writer and the web server."""
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        properties.ReceiveMaximum = RECEIVE_MAXIMUM
        shared = self.settings.group is not None
        if not shared:
            properties.SessionExpiryInterval = SESSION_EXPIRY_S
        self._client.connect_async(
            self.settings.host,
            self.settings.port,
            keepalive=self.settings.keepalive,
            clean_start=shared,
            properties=properties,
        )
        self._client.loop_start()
        self._writer = threading.Thread(target=self._write_loop, name="backoffice-writer", daemon=True)
        self._writer.start()
        if self.settings.http_port is not None:
            self.web_store = BackOfficeStore(self.settings.db)
            self._httpd = ThreadingHTTPServer((self.settings.http_bind, self.settings.http_port), handler(self))
            self._httpd.daemon_threads = True
            self._http_thread = threading.Thread(
                target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="backoffice-http", daemon=True
            )
            self._http_thread.start()
        if self.settings.rollout_interval > 0:
            self._rollout_thread = threading.Thread(target=self._rollout_loop, name="backoffice-rollouts", daemon=True)
            self._rollout_thread.start()

    @property
    def url(self) -> str:
        if self._httpd is None:
            raise RuntimeError("the back office's web server is not started")
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    @property
    def subscribed(self) -> bool:
        """The broker granted this connection's subscriptions (messages flow to this worker)."""
        return self._subscribed.is_set()

    def stop(self) -> None:
        """Disconnect, flush what was received, stop the web server, close the database."""
        self._client.disconnect()
        self._client.loop_stop()
        self._stop.set()
        self._inbox.put(None)
        if self._writer is not None:
            self._writer.join(5)
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._http_thread is not None:
            self._http_thread.join(5)
        if self._rollout_thread is not None:
            self._rollout_thread.join(5)
        if self.web_store is not None:
            self.web_store.close()
        self.store.close()

    def __enter__(self) -> BackOffice:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- MQTT (paho's thread)

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.ConnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason.is_failure:
            log.warning("back office: connection refused (%s)", reason)
            return
        self._generation += 1
        self._subscribed.clear()
        client.subscribe([(topic, 1) for topic in subscriptions(self.settings.group)])
        self._connected.set()

    def _on_subscribe(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reasons: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        refused = [str(r) for r in reasons if r.is_failure]
        if refused:
            log.error("back office: the broker refused subscriptions (%s): check its ACL", ", ".join(refused))
            return
        self._subscribed.set()

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.DisconnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        self._connected.clear()
        self._subscribed.clear()

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        self.stats["received"] += 1
        self._inbox.put((message, self._generation, time.time()))

    # --- the writer thread

    def _next(self) -> tuple[mqtt.MQTTMessage, int, float] | Literal["due"] | None:
        """The next message; None to stop; ``"due"`` when a deferred notice fell due first."""
        if not self._deferred:
            return self._inbox.get()
        left = self._deferred[0][0] - time.monotonic()
        try:
            return self._inbox.get(timeout=max(left, 0.0)) if left > 0 else self._inbox.get_nowait()
        except queue.Empty:
            return "due"

    def _write_loop(self) -> None:
        """Commit batches of messages, then acknowledge them (on the connection they came from)."""
        while True:
            item = self._next()
            if item is None:
                return
            if isinstance(item, str):  # "due"
                self._send_due_notices()
                continue
            batch = [item]
            while len(batch) < BATCH:
                try:
                    more = self._inbox.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self._inbox.put(None)
                    break
                batch.append(more)
            try:
                applied = self.store.apply(
                    Incoming(m.topic, bytes(m.payload), at, correlation_of(m)) for m, _, at in batch
                )
            except Exception:
                self.stats["failed_batches"] += 1
                log.exception("back office: could not store %d messages (the boxes will send them again)", len(batch))
                continue
            self.stats["batches"] += 1
            self.stats["messages"] += len(batch)
            self._acknowledge(applied)
            for device, signed in applied.commands:
                self._client.publish(f"comptoir/{device}/cmd", signed, qos=1)
            for message, generation, _ in batch:
                if message.qos > 0 and generation == self._generation:
                    self._client.ack(message.mid, message.qos)
            if self._deferred and self._deferred[0][0] <= time.monotonic():
                self._send_due_notices()

    def _acknowledge(self, applied: Applied) -> None:
        """Tell each box which of its outbox messages are applied (QoS 1, not waited for: a lost
        acknowledgement only means the box sends the message again, deduplicated), and which are held
        back (now, or after the grace if they are still waiting then)."""
        stored: dict[str, list[str]] = {}
        for device, key in applied.stored:
            stored.setdefault(device, []).append(key)
        for device, keys in stored.items():
            self._publish_ack(device, {"keys": keys})
        if not applied.held:
            return
        grace = self.settings.grace
        if grace <= 0:
            self._publish_held(applied.held)
            return
        due = time.monotonic() + grace
        self._deferred.extend((due, device, key, correlation) for device, key, correlation in applied.held)

    def _send_due_notices(self) -> None:
        """The deferred held-back notices whose grace is over, for the messages still waiting."""
        now = time.monotonic()
        due = [d for d in self._deferred if d[0] <= now]
        self._deferred = [d for d in self._deferred if d[0] > now]
        by_device: dict[str, list[tuple[str, bytes | None]]] = {}
        for _, device, key, correlation in due:
            by_device.setdefault(device, []).append((key, correlation))
        held: list[tuple[str, str, bytes | None]] = []
        for device, items in by_device.items():
            try:
                waiting = self.store.still_pending(device, (key for key, _ in items))
            except Exception:
                log.exception("back office: could not check the messages waiting for %s", device)
                continue
            held.extend((device, key, correlation) for key, correlation in items if key in waiting)
        self._publish_held(held)

    def _publish_held(self, held: list[tuple[str, str, bytes | None]]) -> None:
        """Held-back notices carry the correlation data of the send they answer, so that the box
        ignores one that arrives after it has already sent again."""
        grouped: dict[tuple[str, bytes | None], list[str]] = {}
        for device, key, correlation in held:
            grouped.setdefault((device, correlation), []).append(key)
        for (device, correlation), keys in grouped.items():
            self._publish_ack(device, {"held": keys}, correlation)

    def _publish_ack(self, device: str, body: dict[str, list[str]], correlation: bytes | None = None) -> None:
        properties = None
        if correlation is not None:
            properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            properties.CorrelationData = correlation
        payload = json.dumps(body, separators=(",", ":")).encode("utf-8")
        self._client.publish(f"comptoir/{device}/events/ack", payload, qos=1, properties=properties)

    # --- roll-outs

    def _rollout_loop(self) -> None:
        """Step the roll-outs every ``rollout_interval`` seconds, on one worker of the group at a time
        (a lease in the database, renewed at each step); an error is logged, never fatal (the state is
        in the database, the next step starts from it)."""
        interval = self.settings.rollout_interval
        while not self._stop.wait(interval):
            try:
                if self.store.acquire_lease(ROLLOUT_LEASE, self.settings.client_id, time.time(), 3 * interval):
                    self.rollouts.tick(time.time())
            except Exception:
                log.exception("back office: roll-out step failed")

    # --- commands

    def send_command(
        self,
        device: str,
        kind: str,
        args: dict[str, Any] | None = None,
        *,
        ttl: float = 3600.0,
        command_id: str | None = None,
        timeout: float = 5.0,
    ) -> str:
        """Sign a command for ``device`` (``<pharmacy>/<device>``), record it and publish it (QoS 1).

        Not retained: the box's persistent session queues it while the box is offline, and it is sent
        again each time the box comes online until answered (a crashed broker may have lost the queue).
        Returns its id.
        """
        ident = command_id or uuid.uuid4().hex
        command = make_command(
            self.settings.signing_key, command_id=ident, device=device, kind=kind, args=args or {}, ttl=ttl
        )
        signed = json.dumps(command).encode("utf-8")
        self.store.record_command(
            ident, device, kind, args or {}, signed=signed, expires_at=float(command.get("expires_at") or 0)
        )
        self.publish_raw(f"comptoir/{device}/cmd", signed, timeout=timeout)
        return ident

    def publish_raw(self, topic: str, payload: bytes, *, timeout: float = 5.0) -> None:
        """Publish bytes as they are (tests: forged or repeated commands)."""
        info = self._client.publish(topic, payload, qos=1)
        info.wait_for_publish(timeout)

    def wait_for(self, predicate: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
        """Poll ``predicate`` until it holds or ``timeout`` passes."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(interval)
        return predicate()
