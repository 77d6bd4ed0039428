"""The box's link to the pharmacy's back office: MQTT 5 over mutual TLS (paho-mqtt 2).

Modelled on Home Assistant's MQTT client, which has met most ways a broker connection goes wrong:

- paho's network thread reconnects by itself with a growing delay; on *every* (re)connection
  :meth:`BackOfficeLink._on_connect` subscribes again to the command topic and publishes the retained
  ``online`` state (a broker that lost its state, or a session that expired, gets both back);
- the last will is the retained ``offline`` state, so the fleet page shows a box that lost power;
- a message counts as delivered only when its PUBACK came back with a success reason: paho marks a
  message "published" on any PUBACK, including MQTT 5's "Not authorized", so the reason codes are
  read in ``on_publish``. Waits are bounded and give up early when the connection drops;
- the session is persistent (``clean_start`` false, a long session expiry) so commands sent while the
  box was offline are queued by the broker and arrive when it comes back.

Topics (``<prefix>`` = ``comptoir/<pharmacy>/<device>``; the broker's ACL only lets this box publish
there)::

    <prefix>/state      retained "online" | "offline" (the last will)
    <prefix>/events     outbox stream "events", one JSON message each (QoS 1)
    <prefix>/events/update  outbox stream "updates": update stage events (QoS 1, for roll-outs)
    <prefix>/telemetry  JSON snapshot (QoS 1, not kept when offline: the next one supersedes it)
    <prefix>/cmd        commands from the back office (subscribed, QoS 1)
    <prefix>/cmd/ack    outbox stream "acks": the answers to commands (QoS 1)
    <prefix>/events/ack from the back office: {"keys": [...]} it has stored (subscribed, QoS 1)

A back-office message counts as delivered only when the back office acknowledged its key on
``events/ack`` after storing it: a PUBACK only says the broker has it, and mosquitto PUBACKs before
it persists, so a killed broker could lose it. What is not acknowledged within ``publish_timeout``
is left undelivered and re-published later (the back office deduplicates by key). When the back
office holds back a message because the one before it never arrived (``{"held": [...]}``, with the
correlation data of the send it answers), the run is sent again at once.

An outbox message goes out as ``{"key", "seq", "stream", **payload}``: ``key`` is what receivers
deduplicate on, ``seq`` (the outbox id) lets them check the order per stream, ``prev`` (the ``seq`` of
the message before it in the same stream, when this process knows it) lets the back office hold back
a message whose predecessor has not arrived yet, so re-sends cannot be stored out of order.
"""

from __future__ import annotations

import json
import logging
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from appliance.delivery import ACK_STREAM, EVENT_STREAM, UPDATE_STREAM, PublishOutcome
from appliance.store.outbox import OutboxMessage

log = logging.getLogger(__name__)

STREAM_TOPICS = {EVENT_STREAM: "events", ACK_STREAM: "cmd/ack", UPDATE_STREAM: "events/update"}
"""Outbox stream -> topic under the box's prefix."""
ONLINE, OFFLINE = b"online", b"offline"
MAX_ACKED = 100_000
"""Acknowledged keys kept for the waits at most (beyond, the old ones are forgotten)."""
SESSION_EXPIRY_S = 7 * 24 * 3600
"""How long the broker keeps this box's session (and queues its commands) while it is away."""


@dataclass(frozen=True, slots=True)
class MqttSettings:
    """Where the back-office broker is and who this box is."""

    host: str
    port: int
    pharmacy: str
    device: str
    ca: Path
    cert: Path
    key: Path
    keepalive: int = 30
    publish_timeout: float = 10.0
    """How long a window of messages may wait for the back office's acknowledgement before it is retried."""
    reconnect_min: int = 1
    reconnect_max: int = 30
    max_inflight: int = 200

    @property
    def prefix(self) -> str:
        return f"comptoir/{self.pharmacy}/{self.device}"

    @property
    def client_id(self) -> str:
        """The MQTT client id, also the certificate's common name (the broker's user)."""
        return f"{self.pharmacy}/{self.device}"


def tls_context(ca: Path, cert: Path | None, key: Path | None) -> ssl.SSLContext:
    """Verify the broker against the fleet CA (name included) and present our certificate."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(ca))
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if cert is not None and key is not None:
        context.load_cert_chain(str(cert), str(key))
    return context


def correlation_of(message: mqtt.MQTTMessage) -> bytes | None:
    """The MQTT 5 correlation data of a received message (the send a held-back notice answers)."""
    value = getattr(message.properties, "CorrelationData", None) if message.properties else None
    return bytes(value) if isinstance(value, (bytes, bytearray)) else None


def encode(message: OutboxMessage, prev: int | None = None) -> bytes:
    """The wire form of an outbox message (compact JSON, no identity in it: see DESIGN §5)."""
    body: dict[str, Any] = {"key": message.key, "seq": message.id, "stream": message.stream}
    if prev is not None:
        body["prev"] = prev
    body.update(message.payload)
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


class BackOfficeLink:
    """One persistent MQTT connection of the box; implements :class:`appliance.delivery.Publisher`.

    ``on_command`` is called from paho's thread with each raw command payload: hand it over to the
    thread that owns the database (the sync loop), do not touch SQLite there. ``on_connected`` is
    called (paho's thread too) after each successful (re)connection.
    """

    def __init__(
        self,
        settings: MqttSettings,
        *,
        on_command: Callable[[bytes], None],
        on_connected: Callable[[], None] | None = None,
    ) -> None:
        self.settings = settings
        self._on_command_cb = on_command
        self._on_connected_cb = on_connected
        self._connected = threading.Event()
        self._generation = 0
        self._lock = threading.Lock()
        self._reasons: dict[int, ReasonCode] = {}
        self._acked: set[str] = set()
        self._held: set[str] = set()
        self._round = 0
        """Numbers each call to :meth:`publish`; sent as correlation data, echoed by held-back notices."""
        self._ack_arrived = threading.Condition(self._lock)
        self._last_acked: dict[str, int] = {}
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=settings.client_id, protocol=mqtt.MQTTv5, clean_session=None
        )
        client.tls_set_context(tls_context(settings.ca, settings.cert, settings.key))
        client.will_set(self.topic("state"), OFFLINE, qos=1, retain=True)
        client.reconnect_delay_set(settings.reconnect_min, settings.reconnect_max)
        client.max_inflight_messages_set(settings.max_inflight)
        client.max_queued_messages_set(0)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        self._client = client
        self._started = False

    # --- lifecycle

    def topic(self, sub: str) -> str:
        return f"{self.settings.prefix}/{sub}"

    def start(self) -> None:
        """Start paho's network thread and connect in the background (no wait: the box works offline)."""
        if self._started:
            return
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        properties.SessionExpiryInterval = SESSION_EXPIRY_S
        self._client.connect_async(
            self.settings.host,
            self.settings.port,
            keepalive=self.settings.keepalive,
            clean_start=False,
            properties=properties,
        )
        self._client.loop_start()
        self._started = True

    def stop(self, timeout: float = 2.0) -> None:
        """Say "offline" (retained) if connected, disconnect cleanly and stop the network thread.

        A clean disconnect does not fire the last will, so the state is published by hand first.
        """
        if not self._started:
            return
        if self._connected.is_set():
            info = self._client.publish(self.topic("state"), OFFLINE, qos=1, retain=True)
            self._wait(info, time.monotonic() + timeout, self._generation)
        self._client.disconnect()
        self._client.loop_stop()
        self._started = False
        self._connected.clear()

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    # --- paho callbacks (paho's thread)

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.ConnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason.is_failure:
            log.warning("mqtt: the broker refused the connection (%s)", reason)
            return
        client.subscribe([(self.topic("cmd"), 1), (self.topic("events/ack"), 1)])
        client.publish(self.topic("state"), ONLINE, qos=1, retain=True)
        with self._lock:
            self._generation += 1
        self._connected.set()
        log.info("back office: connected (session present: %s)", flags.session_present)
        if self._on_connected_cb is not None:
            self._on_connected_cb()

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.DisconnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        self._connected.clear()
        with self._lock:
            self._ack_arrived.notify_all()
        log.info("back office: disconnected (%s)", reason)

    def _on_publish(
        self, client: mqtt.Client, userdata: Any, mid: int, reason: ReasonCode, properties: Properties
    ) -> None:
        with self._lock:
            self._reasons[mid] = reason

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        if message.topic == self.topic("cmd"):
            self._on_command_cb(bytes(message.payload))
        elif message.topic == self.topic("events/ack"):
            try:
                body = json.loads(message.payload)
            except ValueError:
                return
            if not isinstance(body, dict):
                return
            keys, held = body.get("keys"), body.get("held")
            correlation = correlation_of(message)
            with self._lock:
                if len(self._acked) > MAX_ACKED:
                    self._acked.clear()  # late acknowledgements nobody waits for any more
                if isinstance(keys, list):
                    self._acked.update(k for k in keys if isinstance(k, str))
                if isinstance(held, list) and correlation == self._round.to_bytes(8, "big"):
                    # a notice about an earlier send is stale: that run has been sent again since
                    self._held.update(k for k in held if isinstance(k, str))
                self._ack_arrived.notify_all()

    # --- publishing

    def _wait(self, info: mqtt.MQTTMessageInfo, deadline: float, generation: int) -> str | None:
        """Wait for one PUBACK; None when acknowledged with success, else why not."""
        while not info.is_published():
            left = deadline - time.monotonic()
            if left <= 0:
                return "no PUBACK in time"
            if not self._connected.is_set() or self._generation != generation:
                return "connection lost before the PUBACK"
            try:
                info.wait_for_publish(min(left, 0.1))
            except (RuntimeError, ValueError) as exc:
                return f"publish failed: {exc}"
        with self._lock:
            reason = self._reasons.pop(info.mid, None)
        if reason is not None and reason.is_failure:
            return f"refused by the broker: {reason}"
        return None

    def publish(self, stream: str, messages: Sequence[OutboxMessage]) -> PublishOutcome:
        """Publish a run of outbox messages with QoS 1 and wait (bounded) for the back office to
        acknowledge their keys; returns how many of the run, as a prefix, it acknowledged.

        A PUBACK only says the broker has a message, so it never counts as delivery: when the link
        breaks or the broker refuses one, what the back office already acknowledged is still the
        answer. When the back office says it holds back a message of the run (its predecessor never
        arrived), the rest is sent again at once rather than after the wait runs out.
        """
        sub = STREAM_TOPICS.get(stream)
        if sub is None:
            return PublishOutcome(0, f"no topic for stream {stream!r}")
        if not self._connected.is_set():
            return PublishOutcome(0, "not connected to the back office")
        topic = self.topic(sub)
        generation = self._generation
        infos: list[mqtt.MQTTMessageInfo] = []
        properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        with self._lock:
            prev = self._last_acked.get(stream)
            self._round += 1
            self._held.clear()
            properties.CorrelationData = self._round.to_bytes(8, "big")
        for message in messages:
            info = self._client.publish(topic, encode(message, prev), qos=1, properties=properties)
            prev = message.id
            if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
                break
            infos.append(info)
        deadline = time.monotonic() + self.settings.publish_timeout
        sent = messages[: len(infos)]
        for n, info in enumerate(infos):
            error = self._wait(info, deadline, generation)
            if error is not None:
                # only what the back office acknowledged so far counts, PUBACKed or not
                done, _, _ = self._wait_acknowledged(stream, sent[:n], time.monotonic(), generation)
                return PublishOutcome(done, error)
        done, error, resend = self._wait_acknowledged(stream, sent, deadline, generation)
        if error is not None:
            return PublishOutcome(done, error, resend=resend)
        if len(infos) < len(messages):
            return PublishOutcome(len(infos), "paho refused to queue the message")
        return PublishOutcome(len(infos))

    def _wait_acknowledged(
        self, stream: str, messages: Sequence[OutboxMessage], deadline: float, generation: int
    ) -> tuple[int, str | None, bool]:
        """Wait until the back office acknowledged the keys of ``messages``.

        Returns the prefix acknowledged, why not all of it, and whether to send the rest again at
        once (the back office holds back one of them: an earlier one was lost on the way).
        """
        done = 0
        error: str | None = None
        resend = False
        with self._lock:
            while True:
                while done < len(messages) and messages[done].key in self._acked:
                    done += 1
                if done == len(messages):
                    break
                if self._held and any(m.key in self._held for m in messages[done:]):
                    error, resend = "the back office is missing an earlier message: sending again", True
                    if done == 0 and messages[0].key in self._held:
                        # it does not know the message we took as acknowledged before this run (its
                        # store was restored, say): send the run without ``prev`` so it is taken
                        self._last_acked.pop(stream, None)
                    break
                left = deadline - time.monotonic()
                if left <= 0:
                    error = f"the back office did not acknowledge within {self.settings.publish_timeout:g} s"
                    break
                if not self._connected.is_set() or self._generation != generation:
                    error = "connection lost before the back office acknowledged"
                    break
                self._ack_arrived.wait(min(left, 0.1))
            self._acked.difference_update(m.key for m in messages)
            if done:
                self._last_acked[stream] = messages[done - 1].id
        return done, (None if done == len(messages) else error), resend

    def publish_now(self, sub: str, payload: bytes, *, retain: bool = False, timeout: float = 5.0) -> str | None:
        """Publish one message that is not in the outbox (telemetry, a refusal of an unauthenticated
        command) with QoS 1; None when acknowledged, else why not."""
        if not self._connected.is_set():
            return "not connected to the back office"
        generation = self._generation
        info = self._client.publish(self.topic(sub), payload, qos=1, retain=retain)
        return self._wait(info, time.monotonic() + timeout, generation)
