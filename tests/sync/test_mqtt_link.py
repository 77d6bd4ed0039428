"""sync.mqtt's BackOfficeLink against a real mosquitto (TLS, shipped ACL) and a scripted back office.

The scripted back office is a plain paho client with the back office's certificate: it answers each
message the box publishes on ``events/ack`` as the test says, so the box's side of the end-to-end
acknowledgement can be checked case by case (the reference back office is tested elsewhere).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from appliance.store.outbox import OutboxMessage
from sandbox.backoffice.broker import MosquittoBroker
from sandbox.backoffice.pki import Pki
from sync.mqtt import BackOfficeLink, MqttSettings, tls_context

Answer = Callable[[dict[str, Any]], str]
"""Given a message the box sent, "keys" (stored), "held" or "" (no answer)."""


class ScriptedBackOffice:
    def __init__(self, broker: MosquittoBroker, pki: Pki) -> None:
        self.received: list[dict[str, Any]] = []
        self.correlations: list[bytes] = []
        self.answer: Answer = lambda body: "keys"
        self._subscribed = threading.Event()
        issued = pki.client("backoffice")
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="scripted-backoffice", protocol=mqtt.MQTTv5)
        self.client.tls_set_context(tls_context(pki.ca.cert, issued.cert, issued.key))
        self.client.on_connect = lambda c, *_: c.subscribe("comptoir/+/+/events", qos=1)
        self.client.on_subscribe = lambda *_: self._subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", broker.port)
        self.client.loop_start()
        assert self._subscribed.wait(10), "the scripted back office could not subscribe"

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        body = json.loads(message.payload)
        self.received.append(body)
        self.correlations.append(message.properties.CorrelationData)  # type: ignore[union-attr]
        kind = self.answer(body)
        if kind:
            _, pharmacy, device, _ = message.topic.split("/")
            echo = Properties(PacketTypes.PUBLISH)
            echo.CorrelationData = message.properties.CorrelationData  # type: ignore[union-attr]
            client.publish(
                f"comptoir/{pharmacy}/{device}/events/ack", json.dumps({kind: [body["key"]]}), qos=1, properties=echo
            )

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def office(broker: MosquittoBroker, pki: Pki) -> Iterator[ScriptedBackOffice]:
    scripted = ScriptedBackOffice(broker, pki)
    yield scripted
    scripted.close()


@pytest.fixture
def link(broker: MosquittoBroker, pki: Pki) -> Iterator[BackOfficeLink]:
    issued = pki.client("ph1/c1")
    settings = MqttSettings(
        "127.0.0.1", broker.port, "ph1", "c1", pki.ca.cert, issued.cert, issued.key, publish_timeout=5.0
    )
    box = BackOfficeLink(settings, on_command=lambda raw: None)
    box.start()
    assert box.wait_connected(10)
    yield box
    box.stop()


def _messages(first: int, count: int) -> list[OutboxMessage]:
    return [
        OutboxMessage(n, "events", f"e{n}", {"type": "claim.created", "claim": n}, 0.0, 0, 0.0, None, None)
        for n in range(first, first + count)
    ]


def test_a_message_counts_as_delivered_only_when_the_back_office_acknowledged_its_key(
    office: ScriptedBackOffice, link: BackOfficeLink
) -> None:
    office.answer = lambda body: "keys" if body["seq"] < 4 else ""
    started = time.monotonic()
    outcome = link.publish("events", _messages(1, 5))
    assert outcome.acknowledged == 3, "the broker's PUBACK for e4 and e5 is not enough"
    assert outcome.error is not None and "did not acknowledge" in outcome.error and not outcome.resend
    assert time.monotonic() - started >= 4.5, "it waited for the acknowledgement"
    office.answer = lambda body: "keys"
    assert link.publish("events", _messages(4, 2)).acknowledged == 2
    assert [b.get("prev") for b in office.received[-2:]] == [3, 4], "each message names the one before it"


def test_a_held_back_message_means_sending_again_at_once(office: ScriptedBackOffice, link: BackOfficeLink) -> None:
    office.answer = lambda body: "held" if body["seq"] == 3 else ("keys" if body["seq"] < 3 else "")
    started = time.monotonic()
    outcome = link.publish("events", _messages(1, 5))
    assert outcome.acknowledged == 2 and outcome.resend
    assert time.monotonic() - started < 2.5, "no waiting out the 5 s deadline once the gap is known"


def test_a_late_notice_about_an_earlier_send_is_ignored(office: ScriptedBackOffice, link: BackOfficeLink) -> None:
    office.answer = lambda body: "held" if body["seq"] == 2 else ""
    assert link.publish("events", _messages(1, 3)).resend
    first_send = office.correlations[-1]

    def answer(body: dict[str, Any]) -> str:
        if body["seq"] == 1:  # the notice about the first send arrives late, while the run is sent again
            stale = Properties(PacketTypes.PUBLISH)
            stale.CorrelationData = first_send
            office.client.publish("comptoir/ph1/c1/events/ack", json.dumps({"held": ["e3"]}), qos=1, properties=stale)
        return "keys"

    office.answer = answer
    again = link.publish("events", _messages(1, 3))
    assert again.acknowledged == 3 and not again.resend


def test_a_back_office_that_forgot_the_last_acknowledged_message_gets_the_run_without_prev(
    office: ScriptedBackOffice, link: BackOfficeLink
) -> None:
    assert link.publish("events", _messages(1, 2)).acknowledged == 2
    stored: set[int] = set()  # its store was restored from a backup taken before e1 and e2

    def answer(body: dict[str, Any]) -> str:
        if "prev" in body and body["prev"] not in stored:
            return "held"
        stored.add(body["seq"])
        return "keys"

    office.answer = answer
    outcome = link.publish("events", _messages(3, 2))
    assert outcome.acknowledged == 0 and outcome.resend
    again = link.publish("events", _messages(3, 2))
    assert again.acknowledged == 2 and again.error is None
    assert "prev" not in office.received[-2], "the first of the run is sent without prev, the next names it"
    assert office.received[-1]["prev"] == 3
