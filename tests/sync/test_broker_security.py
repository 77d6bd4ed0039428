"""The broker's TLS and ACL, as shipped: certificates decide who may connect and where it may publish."""

from __future__ import annotations

import ssl
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from sandbox.backoffice.broker import MosquittoBroker
from sandbox.backoffice.pki import Pki
from sync.backoffice.service import BackOffice
from sync.broker import PRODUCTION, SHIPPED_CONF, render_config
from sync.mqtt import tls_context


def _client(client_id: str, context: ssl.SSLContext) -> mqtt.Client:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    client.tls_set_context(context)
    return client


def _connect(client: mqtt.Client, port: int) -> mqtt.Client:
    connected = threading.Event()
    client.on_connect = lambda c, u, f, rc, p: connected.set()
    client.connect("127.0.0.1", port)
    client.loop_start()
    assert connected.wait(5)
    return client


def _handshake_refused(port: int, context: ssl.SSLContext) -> None:
    client = _client("intruder", context)
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        client.connect("127.0.0.1", port)
        for _ in range(20):  # TLS 1.3: the refusal of the client certificate arrives with the first read
            client.loop(0.1)
            if client.is_connected():
                break
        assert not client.is_connected()
        raise ConnectionError("not connected")


def test_shipped_configuration_is_the_rendered_one() -> None:
    assert SHIPPED_CONF.read_text(encoding="utf-8") == render_config(PRODUCTION, run_as="mosquitto")


def test_a_client_without_certificate_is_refused(pki: Pki, broker: MosquittoBroker) -> None:
    _handshake_refused(broker.port, tls_context(pki.ca.cert, None, None))


def test_a_certificate_from_another_ca_is_refused(tmp_path: Path, pki: Pki, broker: MosquittoBroker) -> None:
    rogue = Pki(tmp_path / "rogue", "rogue CA").client("ph1/c1")
    _handshake_refused(broker.port, tls_context(pki.ca.cert, rogue.cert, rogue.key))


def test_plain_tcp_gets_no_mqtt_session(broker: MosquittoBroker) -> None:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="plain", protocol=mqtt.MQTTv5)
    client.connect("127.0.0.1", broker.port)
    for _ in range(20):
        client.loop(0.1)
    assert not client.is_connected()


def test_the_box_checks_the_broker_certificate(tmp_path: Path, pki: Pki, broker: MosquittoBroker) -> None:
    other = Pki(tmp_path / "other", "other CA")
    issued = pki.client("ph1/c1")
    _handshake_refused(broker.port, tls_context(other.ca.cert, issued.cert, issued.key))


def test_device_a_cannot_publish_as_device_b(pki: Pki, broker: MosquittoBroker, backoffice: BackOffice) -> None:
    issued = pki.client("ph1/a")
    client = _connect(_client("ph1/a", tls_context(pki.ca.cert, issued.cert, issued.key)), broker.port)
    reasons: dict[int, ReasonCode] = {}
    client.on_publish = lambda c, u, mid, rc, p: reasons.__setitem__(mid, rc)
    try:
        own = client.publish("comptoir/ph1/a/events", b'{"key": "k1", "seq": 1}', qos=1)
        spoofed = client.publish("comptoir/ph1/b/events", b'{"key": "k2", "seq": 1}', qos=1)
        command = client.publish("comptoir/ph1/b/cmd", b"{}", qos=1)
        own_cmd = client.publish("comptoir/ph1/a/cmd", b"{}", qos=1)
        for info in (own, spoofed, command, own_cmd):
            info.wait_for_publish(5)
        assert not reasons[own.mid].is_failure
        for info in (spoofed, command, own_cmd):
            assert reasons[info.mid].is_failure and str(reasons[info.mid]) == "Not authorized"
        assert backoffice.wait_for(lambda: backoffice.store.event_keys("ph1/a") == ["k1"], 5)
        time.sleep(0.3)
        assert backoffice.store.event_keys("ph1/b") == []
    finally:
        client.loop_stop()
        client.disconnect()


def test_a_box_receives_no_other_box_s_messages(pki: Pki, broker: MosquittoBroker) -> None:
    a, b = pki.client("ph1/a"), pki.client("ph1/b")
    spy = _connect(_client("ph1/a", tls_context(pki.ca.cert, a.cert, a.key)), broker.port)
    talker = _connect(_client("ph1/b", tls_context(pki.ca.cert, b.cert, b.key)), broker.port)
    heard: list[str] = []
    spy.on_message = lambda c, u, m: heard.append(m.topic)
    try:
        spy.subscribe("comptoir/#", qos=1)
        time.sleep(0.3)
        talker.publish("comptoir/ph1/b/events", b'{"key": "x"}', qos=1).wait_for_publish(5)
        time.sleep(0.5)
        assert heard == []
    finally:
        for client in (spy, talker):
            client.loop_stop()
            client.disconnect()
